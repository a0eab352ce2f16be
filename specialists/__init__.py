"""One module per specialist. Add a file here that defines `SPECIALIST = Specialist(...)`."""
