"""Delivering results from the outbox to PACS and EHR destinations, one class per kind."""
