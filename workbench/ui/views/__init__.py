"""One module per page, each with a `render` function that calls services only.

Not named `pages/`: Streamlit would serve every file there as a page of its own, by URL,
bypassing the role check of `st.navigation`.
"""
