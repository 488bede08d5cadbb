"""The sector an organisation works in (no table: cheap to import)."""

from enum import StrEnum


class Sector(StrEnum):
    """What an organisation does for the territory; the coordinator's aggregates group by it."""

    WATER = "water"
    ENERGY = "energy"
    TRANSPORT = "transport"
    HEALTH = "health"
    EMERGENCY = "emergency"  # fire and rescue, civil protection
    BUILDINGS = "buildings"
    STREET_EQUIPMENT = "street-equipment"  # traffic lights, lighting, cameras, parking
    INDUSTRY = "industry"
    OTHER = "other"
