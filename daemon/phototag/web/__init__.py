"""The local web app: browse, search and review the library in a browser (`phototag web`)."""
