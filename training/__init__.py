"""NV-Embed's two-stage contrastive instruction tuning: data, mining, training, evaluation (docs/training.md).

Entry points: `python -m training.two_stage`, `python -m training.data`, `python -m training.mine`,
`python -m training.evaluate`.
"""
