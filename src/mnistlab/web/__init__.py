"""The browser demo (Gradio)."""
