"""Ray Serve application that serves a trained musicgan generator (``serving.app:app``). See the serving issue."""
