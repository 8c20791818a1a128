"""Tables and pictures people look at: schedule plots, sample grids, the train stage's report."""
