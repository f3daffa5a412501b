"""What comes in: file imports and events."""
