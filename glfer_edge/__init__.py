"""glfer-edge"""
