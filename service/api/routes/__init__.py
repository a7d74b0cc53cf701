"""HTTP routes: thin adapters from pydantic bodies to one domain call each."""
