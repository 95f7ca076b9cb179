"""PAP-REC Studio: ``streamlit run dashboard/app.py``.

Pages live in ``dashboard/pages/``; they are thin and read the run store. This
file imports no torch and loads no model, so the first page shows at once;
the engine is imported in the background while the user looks at it.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the repository
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402


@st.cache_resource(show_spinner=False)
def _warm_up() -> threading.Thread:
    """Import the engine (torch, transformers) once per server, off the script thread."""
    def work():
        try:
            import paprec_core.search.loop  # noqa: F401  (torch, transformers)
        except Exception:  # noqa: BLE001 - a real import error shows where the engine is used
            pass

    t = threading.Thread(target=work, name="paprec-warm-up", daemon=True)
    t.start()
    return t


st.set_page_config(page_title="PAP-REC Studio", page_icon=":material/auto_awesome:", layout="wide")

PAGES = {
    "Search": [
        st.Page("pages/launch.py", title="Launch & watch", icon=":material/rocket_launch:", default=True),
        st.Page("pages/users.py", title="Users", icon=":material/group:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("pages/ablations.py", title="Ablations", icon=":material/science:"),
    ],
    "Manage": [
        st.Page("pages/runs.py", title="Runs", icon=":material/list:"),
        st.Page("pages/data.py", title="Data & backbone", icon=":material/database:"),
    ],
}

page = st.navigation(PAGES)
with st.sidebar:
    st.markdown("**PAP-REC Studio**")
    st.caption("Automatic, personalized prompts for recommendation language models.")
    from dashboard.lib import ui  # noqa: E402  (imports no torch)

    ui.trust_pickle_checkbox()
_warm_up()
page.run()
