"""One module per compression technique; each registers itself under its recipe key."""
