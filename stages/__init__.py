"""DVC stage entry points: thin scripts that parse paths, load params and call pipeline."""
