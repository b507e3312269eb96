"""The collector: takes the fleet's uploads, stores each record once, reports NPS against stream quality."""
