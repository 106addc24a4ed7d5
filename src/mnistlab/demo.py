"""``python -m mnistlab.demo [ckpt_path=PATH] [host=127.0.0.1] [port=7860]``: draw a digit in the browser
(without ``ckpt_path``, with the packaged default model)."""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig

from .cli import hydra_command
from .config import rules
from .core.errors import ConfigError


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(f"port={port}: {host}:{port} is not free ({err.strerror}); choose another port=") \
                from None


def run(cfg: DictConfig) -> None:
    from .config.devices import resolve_device
    from .models.checkpoint import default_model_line, load_model

    port = rules.check("port", cfg.port, lambda v: 1 <= v <= 65535, "must be in 1-65535", whole=True)
    host = str(cfg.host)
    # the checkpoint is refused, and the port found taken, before anything serves
    module, checkpoint = load_model(cfg.ckpt_path, map_location=resolve_device(cfg.device))
    if cfg.ckpt_path is None:
        print(default_model_line(checkpoint), file=sys.stderr)
    check_port_free(host, port)
    from .web.app import THEME, DigitDemo, build_app  # gradio: imported only to serve

    with tempfile.TemporaryDirectory(prefix="mnistlab-demo-") as scratch:
        app = build_app(DigitDemo(module, checkpoint, cfg.ckpt_path, cfg.data_dir, cfg.unsure_below), Path(scratch))
        try:  # Ctrl+C stops it cleanly at any point, while launch still checks its own page too
            app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, theme=THEME,
                       ssr_mode=False, footer_links=[], show_error=True)
            print(f"mnistlab demo: http://{host}:{port}  (Ctrl+C stops it)", flush=True)
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        finally:
            app.close()


main = hydra_command("demo", run)

if __name__ == "__main__":
    main()
