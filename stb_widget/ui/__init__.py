"""The survey question on the TV screen.

Importing this package, :mod:`.catalog`, :mod:`.keys`, :mod:`.lirc`,
:mod:`.evdev_input` or :mod:`.presenter` never imports Textual: the idle agent stays
small, and Textual is loaded only in the prompt's own process (:mod:`.prompt`) or by
``stb-widget ask``.
"""
