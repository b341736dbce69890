"""Building a registered model from its files: torchvision, timm, programs, bundles."""
