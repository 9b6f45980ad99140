"""The browser interface (Streamlit): thin pages over the services, one per role."""
