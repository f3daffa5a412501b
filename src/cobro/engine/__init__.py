"""The daily run: planning, scheduled actions, subscriptions, dispatch and simulation."""
