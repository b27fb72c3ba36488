"""dashboard: the Streamlit app; pages are UI only, data comes from dashboard.queries."""
