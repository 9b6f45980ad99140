"""Services: the workbench's logic. Each takes a Session and typed inputs; no UI imports."""
