"""L1NDA <-> Nmbrs token sync: revalidate tokens, rediscover their reach, reconcile links, alert."""

__version__ = "0.1.0"
