"""sparsehalo"""
