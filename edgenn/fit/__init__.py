"""`edgenn fit`: recipe search for a device budget (space, trials on Ray, front and report)."""
