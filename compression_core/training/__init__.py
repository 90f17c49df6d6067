"""Training: the one loop (`loop.py`) and retraining with a compressed structure held (`finetune.py`)."""
