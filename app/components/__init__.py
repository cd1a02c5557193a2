"""The page's parts: each module renders one area from data the facade returns (no index logic here)."""
