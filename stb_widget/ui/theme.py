"""The two looks of the prompt: a truecolor TV theme and a 16-colour console theme.

Both define the same ``stb-*`` CSS variables, which is all the widgets use. The console
theme uses ANSI colours only, and only the eight dark ones as backgrounds, because the
Linux console (``TERM=linux``) has sixteen foreground but eight background colours.
"""

from __future__ import annotations

from typing import Final

from textual.theme import Theme

from .terminal import CONSOLE, TV, choose_theme

__all__ = ["CONSOLE_THEME", "THEMES", "TV_THEME", "choose_theme"]

TV_THEME: Final = Theme(
    name=TV,
    primary="#ffd21f",
    foreground="#ffffff",
    background="#0b1a2e",
    surface="#0b1a2e",
    panel="#1f3554",
    dark=True,
    variables={
        "stb-bg": "#0b1a2e",
        "stb-fg": "#ffffff",
        "stb-muted": "#c8d3e0",
        "stb-cell-bg": "#1f3554",
        "stb-cell-border": "#7f95b2",
        "stb-focus-bg": "#ffd21f",
        "stb-focus-fg": "#000000",
        "stb-accent": "#ffd21f",
        "stb-warn": "#ff9e80",
    },
)

CONSOLE_THEME: Final = Theme(
    name=CONSOLE,
    ansi=True,
    primary="ansi_yellow",
    foreground="ansi_bright_white",
    background="ansi_black",
    surface="ansi_black",
    panel="ansi_blue",
    dark=True,
    variables={
        # Textual's own CSS needs these with an ANSI theme (as in its "ansi-dark").
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_white",
        "border-blurred": "ansi_black",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-background": "ansi_white",
        "input-cursor-background": "ansi_black",
        "input-cursor-foreground": "ansi_bright_white",
        "input-cursor-text-style": "none",
        "input-selection-background": "ansi_blue",
        "input-selection-foreground": "ansi_bright_white",
        "screen-selection-background": "ansi_blue",
        "screen-selection-foreground": "ansi_bright_white",
        "stb-bg": "ansi_black",
        "stb-fg": "ansi_bright_white",
        "stb-muted": "ansi_white",
        "stb-cell-bg": "ansi_blue",
        "stb-cell-border": "ansi_white",
        "stb-focus-bg": "ansi_white",
        "stb-focus-fg": "ansi_black",
        "stb-accent": "ansi_bright_yellow",
        "stb-warn": "ansi_bright_red",
    },
)

THEMES: Final = {TV_THEME.name: TV_THEME, CONSOLE_THEME.name: CONSOLE_THEME}
