"""asymptote.analysis"""
