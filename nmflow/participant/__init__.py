"""The participant level's science as plain functions: atlases, region signals, denoising, connectivity."""
