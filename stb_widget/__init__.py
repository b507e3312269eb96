"""The set-top box agent: watches the player, asks the NPS question, buffers and syncs."""
