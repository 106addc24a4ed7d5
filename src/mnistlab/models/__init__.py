"""The model side: plain networks, the Lightning classifier around them, schedules, batched inference."""
