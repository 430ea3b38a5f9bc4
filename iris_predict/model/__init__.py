"""The model: its signature (model.json), the artifact and its safe loading, its arithmetic."""
