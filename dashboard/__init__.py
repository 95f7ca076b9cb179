"""PAP-REC Studio dashboard (Streamlit). Run with ``streamlit run dashboard/app.py``."""
