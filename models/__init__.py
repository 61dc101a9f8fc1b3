"""asymptote.models"""
