
ambient-idle"
restŠ
idleš™™™™™Ù?"’
"
ponderŠ
thinking333333Ó?"’
"$
look-aroundŠ
	listeningš™™™™™Ù?"’
0