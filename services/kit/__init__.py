"""Runtime plumbing shared by every service. No domain code lives here."""
