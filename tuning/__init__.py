"""Ray Tune hyperparameter search over musicgan's GANs (``python -m tuning.search``). See the tuning issue."""
