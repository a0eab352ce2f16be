"""Admission: whether a new request is taken now, and what the waiting work says about when it will be served."""
