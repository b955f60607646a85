"""TrayLens nutrient database."""
