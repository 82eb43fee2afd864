"""Analysis of localization tables: matching to ground truth and the challenge metrics."""
