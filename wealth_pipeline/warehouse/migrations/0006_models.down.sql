-- Undo 0006.
DROP TABLE models.predictions;
DROP TABLE models.model_registry;
