"""Physics metrics: shower matching, efficiency, fake rate, response and resolution."""
