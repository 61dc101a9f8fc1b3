"""asymptote.data"""
