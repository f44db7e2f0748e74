"""Streamlit helpers shared by the pages: the sidebar selection, cached loaders, error display,
the Compare grid's computation and the precompute button. Pages stay thin; everything that is
not layout lives in the library (medattn.failures, medattn.leaderboard, medattn.viz)."""
