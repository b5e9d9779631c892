"""The site stage: the atlases in an output folder, the views, the rendered pages, figures and the
local preview."""
