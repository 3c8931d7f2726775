"""The wire: typed models every service and client shares, and the OpenAPI built from them.

Services never import each other; they import from here.
"""
