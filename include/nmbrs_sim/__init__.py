"""A local simulator of Nmbrs' SOAP API v3 (DebtorService, CompanyService) for demos, tests and benchmarks."""

__version__ = "0.1.0"
