"""``python -m pipeline serve``'s web page: colorize and stylize photos in a browser on this
machine (pipeline.apps.serve runs it; app: the routes; jobs: the work queue; static: the page)."""
