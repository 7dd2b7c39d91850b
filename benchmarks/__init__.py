"""Speed and robustness scripts: ratios against baselines measured in the same run."""
