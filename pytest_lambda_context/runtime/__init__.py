"""Lambda's contract as a handler sees it: handler loading, context, errors, records, clock."""
