"""Tables and pictures people look at: schedule plots, sample grids."""
