"""Local HTTP servers that speak the real APIs of the paid services the project uses."""
