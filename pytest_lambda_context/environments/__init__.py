"""LambdaFunction and the execution environments it routes to, in each isolation."""
