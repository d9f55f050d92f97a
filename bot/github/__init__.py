"""Everything about GitHub: events, the command grammar, trigger rules, the REST client, and
the Actions runner. Pure modules (events, commands, rules, render) take data and return data."""
