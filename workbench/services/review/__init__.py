"""Review: the reviewer's flow (flow.py), their wellbeing (wellbeing.py), and the image copies
their browser is sent (media_view.py)."""
