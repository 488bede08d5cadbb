"""The analyst's console: server-rendered pages, one per resource, over the API's services
(``pages.py`` holds what they share; the layout is ``templates/console/base.html``)."""
